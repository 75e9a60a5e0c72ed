from ansible_collections.redis_vps.server.plugins.modules import redis_host as mod

MEMINFO = "MemTotal:         983744 kB\nMemFree:          100000 kB\n"
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'


def test_memtotal_in_mb_as_ansible_reports_it():
    assert mod.memtotal_mb(MEMINFO) == 960
    assert mod.memtotal_mb("") == 0


def test_os_release_fields():
    release = mod.os_release(TRIXIE)
    assert (release["ID"], release["VERSION_ID"], release["VERSION_CODENAME"]) == ("debian", "13", "trixie")


def test_present_lists_each_engines_config_files_and_data_folders():
    there = {"/etc/redis/redis-queue.conf", "/var/lib/redis/queue", "/var/lib/valkey/cache"}
    found = mod.present(["redis", "valkey"], ["cache", "queue"], exists=there.__contains__)
    assert found == {"redis": ["/etc/redis/redis-queue.conf", "/var/lib/redis/queue"],
                     "valkey": ["/var/lib/valkey/cache"]}


def test_installed_reads_dpkgs_file_lists():
    there = {"/var/lib/dpkg/info/redis-sentinel.list", "/var/lib/dpkg/info/haproxy:amd64.list"}
    assert mod.installed(["redis-sentinel", "valkey-sentinel", "haproxy"], exists=there.__contains__) in (
        ["redis-sentinel", "haproxy"], ["redis-sentinel"])
