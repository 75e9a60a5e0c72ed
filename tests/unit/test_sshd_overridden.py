"""plugins/filter/sshd_overridden.py: what sshd -T reports in force against what the hardening asks."""
from ansible_collections.redis_vps.server.plugins.filter.sshd_overridden import sshd_overridden

WANTED = {"PasswordAuthentication": "no", "PermitRootLogin": "prohibit-password", "MaxAuthTries": 3}
IN_FORCE = ["port 22", "permitrootlogin without-password", "passwordauthentication no", "maxauthtries 3",
            "x11forwarding no"]
ALIASES = {"without-password": "prohibit-password"}


def test_nothing_is_listed_when_every_setting_is_in_force_and_sshd_listens_on_the_port():
    assert sshd_overridden(IN_FORCE, WANTED, 22, ALIASES) == []
    assert sshd_overridden(IN_FORCE + ["port 2222"], WANTED, "2222", ALIASES) == []


def test_a_setting_a_cloud_image_overrides_is_listed_with_its_value_in_force():
    lines = [line.replace("passwordauthentication no", "passwordauthentication yes") for line in IN_FORCE]
    assert sshd_overridden(lines, WANTED, 22, ALIASES) == ["PasswordAuthentication yes"]


def test_an_older_spelling_counts_only_through_the_aliases():
    assert sshd_overridden(IN_FORCE, WANTED, 22) == ["PermitRootLogin without-password"]


def test_an_unset_setting_and_a_missing_port_are_listed():
    lines = [line for line in IN_FORCE if not line.startswith("maxauthtries")]
    assert sshd_overridden(lines, WANTED, 2222, ALIASES) == ["MaxAuthTries (unset)", "no Port 2222"]


def test_no_output_at_all_lists_everything():
    """sshd -T failed (a configuration that does not parse): nothing is in force as asked."""
    assert sshd_overridden([], WANTED, 22, ALIASES) == [
        "PasswordAuthentication (unset)", "PermitRootLogin (unset)", "MaxAuthTries (unset)", "no Port 22"]
