import string
from urllib.parse import unquote_plus

from ansible_collections.redis_vps.server.plugins.filter.php_url import php_url_component

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def test_every_printable_password_round_trips_through_a_query_string():
    password = string.ascii_letters + string.punctuation + " "
    encoded = php_url_component(password)
    # PHP's query-string decoding turns '+' into a space, like unquote_plus.
    assert unquote_plus(encoded) == password
    assert unquote_plus(php_url_component(PRINTABLE)) == PRINTABLE


def test_encoded_value_is_safe_in_save_path_and_ini():
    encoded = php_url_component(PRINTABLE)
    assert not set(encoded) & set(" ,;&=?#+\"'$\\{}")
