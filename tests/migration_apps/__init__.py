"""Generated Django projects for the migration safety tests: one app per case, each with an
applied 0001_initial and a pending 0002 holding the operation under test, so that one
``zerodeploy_migrations plan --json`` run classifies every case on a real database."""
