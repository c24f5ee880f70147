#!/usr/bin/env bash
# Creates the local Google Cloud stand-ins' own virtual environment, once
# (default .venv-standins; STANDINS_VENV, an absolute path, overrides):
# bqemulator (BigQuery on DuckDB) and gcp-storage-emulator (Cloud Storage),
# pinned in requirements-standins.txt. The Pub/Sub emulator comes with the
# machine's Google Cloud CLI and needs nothing here.
#
# DuckDB cannot download its extensions here, so the spatial and avro
# extensions are INSTALLed from the files inside their PyPI wheels, into
# <venv>/duckdb-home/.duckdb/extensions: the test harness starts bqemulator
# with HOME=<venv>/duckdb-home, so nothing is written outside the venv.
#
# Re-running is cheap: it does nothing while the stamp is newer than the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${STANDINS_VENV:-.venv-standins}"
PINS=requirements-standins.txt
STAMP="$VENV/.installed"

if [[ -f "$STAMP" && "$STAMP" -nt "$PINS" && "$STAMP" -nt "$0" ]]; then
  exit 0
fi
if [[ -f "$VENV/pyvenv.cfg" ]]; then
  rm -rf "$VENV"  # a stale or half-made environment of ours
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$PINS"
mkdir -p "$VENV/duckdb-home"
HOME="$(cd "$VENV/duckdb-home" && pwd)" "$VENV/bin/python" - <<'PY'
import glob
import importlib.util

import duckdb

connection = duckdb.connect()
for name in ('spatial', 'avro'):
  package = importlib.util.find_spec(f'duckdb_extension_{name}')
  files = glob.glob(f'{package.submodule_search_locations[0]}'
                    f'/extensions/v{duckdb.__version__}/*.duckdb_extension')
  if len(files) != 1:
    raise SystemExit(f'no {name} extension for DuckDB {duckdb.__version__}')
  connection.execute(f"INSTALL '{files[0]}'")
  connection.execute(f'LOAD {name}')
print('duckdb', duckdb.__version__, 'extensions:', ', '.join(
    row[0] for row in connection.execute(
        "SELECT extension_name FROM duckdb_extensions() "
        "WHERE loaded AND install_mode <> 'STATICALLY_LINKED'").fetchall()))
PY
touch "$STAMP"
