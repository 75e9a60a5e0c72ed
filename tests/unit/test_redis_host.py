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


STATUS = """Package: redis-sentinel
Status: install ok installed
Architecture: all

Package: haproxy
Status: install ok installed
Architecture: amd64
Description: fast and reliable load balancing reverse proxy
 HAProxy is a TCP/HTTP reverse proxy
 Status: install ok installed

Package: unattended-upgrades
Status: deinstall ok config-files
Architecture: all

Package: libc6
Status: hold ok installed
Architecture: amd64

Package: php8.4-fpm
Status: install ok half-configured
"""


def test_installed_reads_dpkgs_status_not_its_file_lists():
    # A package removed with its config files kept (apt remove) keeps its NAME.list: not installed.
    there = mod.dpkg_installed(STATUS)
    assert there == {"redis-sentinel", "haproxy", "libc6"}
    assert mod.installed(["redis-sentinel", "valkey-sentinel", "haproxy", "unattended-upgrades"], there) == [
        "redis-sentinel", "haproxy"]
    assert mod.installed(["haproxy"], mod.dpkg_installed("")) == []


def test_inventory_lists_every_installed_package_the_units_under_etc_and_whether_apt_has_lists():
    lists = {"/etc/systemd/system": ["redis-server.service", "multi-user.target.wants"],
             "/var/lib/apt/lists": ["lock", "partial", "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages.lz4"]}

    def listdir(path):
        if path not in lists:
            raise FileNotFoundError(path)
        return lists[path]
    assert mod.host_inventory(mod.dpkg_installed(STATUS), listdir) == {"packages": ["haproxy", "libc6", "redis-sentinel"],
                                                   "units": ["multi-user.target.wants", "redis-server.service"],
                                                   "apt_lists": True}
    lists["/var/lib/apt/lists"] = ["lock", "partial"]       # an image with emptied lists
    assert not mod.host_inventory(set(), listdir)["apt_lists"]
    assert mod.host_inventory(set(), lambda path: (_ for _ in ()).throw(OSError(path))) == {
        "packages": [], "units": [], "apt_lists": False}
