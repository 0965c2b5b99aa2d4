// Package api serves the part of GitLab's REST API that admins' scripts use
// to drive maintenance mode: GET and PUT /api/v4/application/settings with
// maintenance_mode and maintenance_mode_message, with GitLab's status codes
// and bodies, so runbooks written for GitLab work unchanged. It also blocks
// other API writes with 503 while the instance is in maintenance, as GitLab
// does.
package api
