"""Filters of the adoption of a hand-made setup (tasks/validate.yml, tasks/adopt.yml):
what the validation play found, in words; a directive's value in a Redis config file
(parsed as the server parses it: module_utils/redis_handmade.py)."""

from ansible_collections.redis_vps.server.plugins.module_utils.redis_handmade import parse_conf


def redis_adopt_summary(found):
    """The `adopt` report of library/redis_host.py in one sentence (never a password)."""
    parts = []
    if found.get("installed") and (found.get("databases") or found.get("data_files") or found.get("error")):
        state = ", ".join(word for word, on in (("running", found.get("active")), ("enabled", found.get("enabled"))) if on)
        head = "%s%s" % (found.get("unit", ""), " (%s)" % state if state else " (stopped)")
        if found.get("databases"):
            dbs = sorted(found["databases"].items(), key=lambda kv: int(kv[0]))
            head += " holding " + ", ".join("db %s: %d keys" % (db, keys) for db, keys in dbs)
        if found.get("data_files"):
            head += " whose files hold data: " + ", ".join(found["data_files"])
        if found.get("error"):
            head += ", but " + found["error"]
        parts.append(head)
    if found.get("pools"):
        parts.append("PHP-FPM pool lines that set sessions themselves: " + ", ".join(
            "%s line %d %s[%s]" % (p["path"], p["line"], p["directive"], p["setting"]) for p in found["pools"]))
    return "; ".join(parts) or "nothing"


def redis_conf_value(text, name):
    """The value of directive `name` in a Redis config file's text ('' when unset)."""
    return parse_conf(text).get(name.lower(), "")


class FilterModule:
    def filters(self):
        return {"redis_adopt_summary": redis_adopt_summary, "redis_conf_value": redis_conf_value}
