# Sourced by .ci/run and .ci/run-slow: a fresh venv at the repository root with the
# package, its test extra and the "bench" extra (torch==2.13.0, the CPU build on disk;
# the parity tests use it), activated.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test,bench]'
