// Package ops holds no code: it is the home of the operators' runbook
// scripts (daily_check.sh, weekly_check.sh, backup_config.sh, and lib.sh
// which they share) and of the test that runs them against a running
// agent. docs/operations.md says when to run them and what they report.
package ops
