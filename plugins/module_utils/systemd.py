"""The collection's one reader of systemd's unit states: `systemctl show` for several
units in one call, parsed. Used by plugins/modules/redis_instance.py and host_files.py."""

# ActiveState values of a unit that runs or is about to (a reload keeps it running).
RUNNING = ("active", "activating", "reloading")
PROPERTIES = ("Id", "ActiveState", "UnitFileState")


def parse_show(out, units):
    """unit -> its properties, from `systemctl show` of those units: one block per unit,
    in the order asked, separated by a blank line."""
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.strip().split("\n\n")]
    return dict(zip(units, blocks))


def summary(properties):
    """active (running or about to), enabled (UnitFileState enabled) of one unit's properties."""
    return dict(active=properties.get("ActiveState") in RUNNING, enabled=properties.get("UnitFileState") == "enabled")


def show(run_command, units, properties=PROPERTIES):
    """unit -> its properties, with one systemctl call; RuntimeError with systemctl's words."""
    units = list(units)
    if not units:
        return {}
    rc, out, err = run_command(["systemctl", "show", "--property=" + ",".join(properties)] + units)
    if rc != 0:
        raise RuntimeError("systemctl show %s: %s" % (" ".join(units), err.strip()))
    return parse_show(out, units)
