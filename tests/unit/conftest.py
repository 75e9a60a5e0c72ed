"""Unit tests import the collection's Python the way Ansible does: as the package
ansible_collections.redis_vps.server (collections/ansible_collections/redis_vps/server links
this repository in, as it does for the playbooks), with collections/ on sys.path. The
backup program is a file installed on the host, not a plugin: it is imported from its folder."""
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))
sys.path.insert(0, str(REPO / "roles" / "redis_backup" / "files"))
# The backup program imports the collection's RESP client from where the role installs it
# (/usr/local/lib/redis-vps/redis_resp.py); here it comes from the source.
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
