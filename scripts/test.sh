#!/usr/bin/env bash
# The whole test suite: lint, unit/integration/end-to-end tests (pytest, with the machine's
# PostgreSQL and Redis), Rasa data validation, story tests and NLU cross-validation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RASA=.venv/bin/rasa
MODEL=$($PY -m devstack model-path | tail -n 1)
# endpoints.yml / credentials.yml need these to load; rasa test never calls them. They are
# given to the rasa commands only: the end-to-end tests' stack sets its own.
RASA_ENV=(env ACTION_ENDPOINT_URL=http://127.0.0.1:5055/webhook
  CALLBACK_URL=http://127.0.0.1:8701/callback)
export SQLALCHEMY_SILENCE_UBER_WARNING=1  # Rasa's SQL tracker store is SQLAlchemy 1.4 style
mkdir -p reports

echo "== lint"
$PY -m ruff check .
$PY -m ruff format --check .

echo "== rasa data validate"
# Fail on every data warning except "response not used in any story or rule": our responses
# are uttered by custom actions, and tests/test_domain.py checks each one is really used;
# and "other_language" having no training examples: rasa_ext.language_guard sets it.
"${RASA_ENV[@]}" $RASA data validate --config config.yml --domain domain.yml --data data >reports/validate.log 2>&1 \
  || { cat reports/validate.log; exit 1; }
if grep "UserWarning" reports/validate.log | grep -v "is not used in any story or rule" \
  | grep -v "The intent 'other_language' is listed in the domain file, but is not found in the NLU training data"; then
  echo "rasa data validate reported the warnings above" >&2
  exit 1
fi

echo "== rasa test: stories"
"${RASA_ENV[@]}" $RASA test core --model "$MODEL" --stories tests/stories --out reports/stories \
  --fail-on-prediction-errors --no-plot

echo "== rasa test: NLU cross-validation"
"${RASA_ENV[@]}" $RASA test nlu --nlu data/nlu --config config.yml --cross-validation --folds 3 \
  --out reports/nlu --no-plot >reports/nlu-cross-validation.log 2>&1 \
  || { tail -n 40 reports/nlu-cross-validation.log; exit 1; }
$PY -m devstack.nlu_report reports/nlu reports/nlu-summary.md

echo "== pytest"
bash scripts/browser.sh
$PY -m pytest "$@"
