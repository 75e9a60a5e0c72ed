"""The collection's one file writer: a file is compared with what it should hold (content,
owner, mode), and written only where it differs, atomically (a temporary file beside it,
with its final owner and mode, renamed into place: never there half-written nor, even
briefly, readable by others), after an optional check command on the new content and an
optional backup copy of the old file. The standard library only.

Used by plugins/modules/redis_instance.py and host_files.py."""

import grp
import os
import pwd
import shlex
import tempfile


class CheckFailed(Exception):
    """The check command refused the new content (nothing was written)."""


def read(path, exact=False):
    """A text file's content, or None when it is not there. `exact`: as it is byte for byte
    (line ends kept as they are, bytes that are not UTF-8 kept as surrogates), so that it
    equals a content only when the file holds exactly that content's UTF-8 bytes."""
    try:
        if exact:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                return handle.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def ids(owner, group, mode):
    """(uid, gid, mode as a number) of names and an octal string."""
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid, int(mode, 8)


def attributes_differ(path, uid, gid, mode):
    st = os.stat(path)
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode)


def write_atomic(path, content, uid, gid, mode):
    """Write content beside path with its final owner and mode, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_argv(command, path):
    """The argv of a check command such as `/usr/sbin/nft -c -f %s` for the file at path."""
    words = shlex.split(command)
    if not any("%s" in word for word in words):
        raise ValueError("the check command %r has no %%s for the file to check" % command)
    return [word.replace("%s", path) for word in words]


NFT = "/usr/sbin/nft"
# What /etc/nftables.conf (vps_hardening) declares before it includes /etc/nftables.d/*.nft.
NFT_STUB = ("table inet filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n  }\n}\n")


def check_nft_fragment(run_command, content):
    """`nft -c` on an nftables fragment (check `nft`), after a stub of the table it adds to:
    a fragment that fails would leave the host without a firewall at its next boot.
    Skipped where nft is not installed (no firewall loads the fragments); CheckFailed."""
    if not os.path.exists(NFT):
        return
    fd, tmp = tempfile.mkstemp(prefix=".redis-vps-nft-check.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(NFT_STUB + content)
        rc, out, err = run_command([NFT, "-c", "-f", tmp])
    finally:
        os.unlink(tmp)
    if rc != 0:
        raise CheckFailed(" ".join((err or out or "exit status %d" % rc).split())[-600:])


def check_content(run_command, command, path, content):
    """Run the check command on content written to a temporary file beside path (the same
    folder, so that relative includes resolve as they will); CheckFailed with its words.
    The command `nft`: content is an nftables fragment (check_nft_fragment)."""
    if command == "nft":
        check_nft_fragment(run_command, content)
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".%s.check." % os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, 0o600)
        rc, out, err = run_command(check_argv(command, tmp))
    finally:
        os.unlink(tmp)
    if rc != 0:
        raise CheckFailed(" ".join((err or out or "exit status %d" % rc).split())[-600:])


def sync_dir(path, owner="root", group="root", mode="0755", check_mode=False):
    """Make the folder path exist with owner, group and mode (made with its parents where
    missing: the folder itself 0700 until its owner and mode are set). Returns whether
    anything was, or would be, done."""
    uid, gid, want_mode = ids(owner, group, mode)
    try:
        if not attributes_differ(path, uid, gid, want_mode):
            return False
    except FileNotFoundError:
        if check_mode:
            return True
        os.makedirs(path, mode=0o700)
    if not check_mode:
        os.chown(path, uid, gid)
        os.chmod(path, want_mode)
    return True


def sync(path, content, owner="root", group="root", mode="0644", check=None, backup=None, run_command=None,
         check_mode=False, dir_mode=None, exact=False):
    """Make path hold content with owner, group and mode. Returns a dict:
    changed (anything done or to do), written (the content was, or would be, replaced),
    before (the old content, None if the file was not there), backup (the copy's path).
    `check`: a command with %s, run on the new content first (CheckFailed: nothing
    written). `backup`: a function path -> the copy's path (AnsibleModule.backup_local),
    called before an existing file is replaced. `dir_mode`: the folder's mode, the folder
    made (root, 0755 or that mode) when missing. `exact`: the old content is compared byte
    for byte (see read)."""
    uid, gid, want_mode = ids(owner, group, mode)
    before = read(path, exact)
    out = dict(changed=False, written=False, before=before, backup=None)
    folder = os.path.dirname(path)
    folder_ok = not dir_mode or not os.path.isdir(folder) or os.stat(folder).st_mode & 0o7777 == int(dir_mode, 8)
    if before == content:
        if attributes_differ(path, uid, gid, want_mode) or not folder_ok:
            out["changed"] = True
            if not check_mode:
                os.chown(path, uid, gid)
                os.chmod(path, want_mode)
                if dir_mode:
                    os.chmod(folder, int(dir_mode, 8))
        return out
    out.update(changed=True, written=True)
    if check_mode:
        return out
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o755, exist_ok=True)
    if dir_mode:
        os.chmod(folder, int(dir_mode, 8))
    if check:
        check_content(run_command, check, path, content)
    if backup is not None and before is not None:
        out["backup"] = backup(path)
    write_atomic(path, content, uid, gid, want_mode)
    return out
