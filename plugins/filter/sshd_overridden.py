"""What sshd would keep of its own against the settings asked (roles/vps_hardening)."""


def sshd_overridden(lines, wanted, port, aliases=None):
    """The settings of `wanted` that `sshd -T` (its output, `lines`) does not report as asked, as
    "Keyword value-in-force" (or "(unset)"), and "no Port N" when sshd would not listen on `port`.

    `sshd -T` prints each keyword in lower case with its value (the last of a repeated keyword
    wins here, as each is printed once but `port` and a few others); `aliases` maps an older
    spelling sshd may print (without-password) to the one asked (prohibit-password). An empty
    `lines` (sshd -T failed: the configuration does not parse) reports every setting unset.
    """
    aliases = aliases or {}
    have, ports = {}, []
    for line in lines or []:
        words = str(line).split(" ", 1)
        have[words[0]] = aliases.get(words[1], words[1]) if len(words) > 1 else ""
        if words[0] == "port" and len(words) > 1:
            ports.append(words[1])
    bad = ["%s %s" % (keyword, have.get(keyword.lower(), "(unset)"))
           for keyword, value in wanted.items() if have.get(keyword.lower()) != str(value).lower()]
    if str(port) not in ports:
        bad.append("no Port %s" % port)
    return bad


class FilterModule:
    def filters(self):
        return {"sshd_overridden": sshd_overridden}
