"""The install instructions work as written: repsim is not on PyPI, so extras are installed
from a checkout or a wheel, and the unrelated PyPI package ``repsim`` is named."""

import re

from paths import REPO_ROOT

import repsim

README = (REPO_ROOT / "README.md").read_text()
INSTALL = (REPO_ROOT / "docs" / "install.md").read_text()


def test_no_instruction_installs_an_extra_from_pypi():
    for name, text in (("README.md", README), ("docs/install.md", INSTALL)):
        asked = re.findall(r"`pip install '?repsim-av\[[^`]*`", text)
        assert not asked, (name, asked)
    assert "pip install -e '.[tensorboard]'" in README and "pip install -e '.[tensorboard]'" \
        in INSTALL


def test_the_wheel_named_is_the_one_this_version_builds():
    wheel = f"repsim_av-{repsim.__version__}-py3-none-any.whl"
    for text in (README, INSTALL):
        named = set(re.findall(r"repsim_av-[0-9][^\s'\[]*\.whl", text))
        assert named == {wheel}, named


def test_the_unrelated_pypi_package_is_named():
    for text in (README, INSTALL):
        plain = " ".join(text.split())
        assert "unrelated PyPI package" in plain and "cannot share an environment" in plain


def test_make_setup_installs_the_extras_the_page_names():
    """docs/install.md says which extras `make setup` installs; the Makefile decides."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    installed = re.search(r'pip install -q -e "\.\[([a-z,]+)\]"', makefile).group(1)
    named = re.search(r"`make setup` .*?\(`pip install -e '\.\[([a-z,]+)\]'`\)", INSTALL,
                      re.S).group(1)
    assert named == installed
