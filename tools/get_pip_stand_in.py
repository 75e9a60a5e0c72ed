"""Stand-in for the pip bootstrap script ansible-test downloads (get-pip-X.Y.py).

ansible-test makes each sanity test's virtual environment without pip, then runs the
script it keeps in ~/.ansible/test/cache/get_pip_X_Y.py (downloaded from
ci-files.testing.ansible.com, a host these machines cannot reach) with the venv's Python
and the arguments of pip's install command (`--disable-pip-version-check pip==X.Y
--no-setuptools --no-wheel`). This does the same with what Python ships: the venv's own
ensurepip, then pip installs the pip version asked for from the package index.
tools/sanity copies it into that cache path when nothing is there.
"""
import subprocess
import sys

# get-pip.py options that `pip install` does not know (setuptools and wheel are left out anyway).
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main(argv):
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)
    wanted = [arg for arg in argv if arg not in GET_PIP_ONLY]
    return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wanted], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
