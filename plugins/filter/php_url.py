"""URL-encoding for values that phpredis reads from session.save_path."""
from urllib.parse import quote


def php_url_component(value):
    """Percent-encode everything but letters, digits and -._~.

    phpredis splits save_path on commas and parses its query string, where '+'
    would turn into a space: every other character is encoded, so any printable
    password survives, and the result needs no quoting in an ini file.
    """
    return quote(str(value), safe="-._~")


class FilterModule:
    def filters(self):
        return {"php_url_component": php_url_component}
