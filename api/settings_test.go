package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseChange(t *testing.T) {
	tests := []struct {
		name, query, ctype, body string
		enabled                  string // "", "true", "false"
		message                  *string
		err                      string
	}{
		{name: "query true", query: "maintenance_mode=true", enabled: "true"},
		{name: "query 1", query: "maintenance_mode=1", enabled: "true"},
		{name: "query 0", query: "maintenance_mode=0", enabled: "false"},
		{name: "query TRUE", query: "maintenance_mode=TRUE", enabled: "true"},
		{name: "query yes", query: "maintenance_mode=yes", err: "maintenance_mode is invalid"},
		{name: "query empty", query: "maintenance_mode=", err: "maintenance_mode is invalid"},
		{name: "form", ctype: "application/x-www-form-urlencoded", body: "maintenance_mode=false&maintenance_mode_message=Hi",
			enabled: "false", message: ptrTo("Hi")},
		{name: "json bool", ctype: "application/json", body: `{"maintenance_mode": true}`, enabled: "true"},
		{name: "json number", ctype: "application/json", body: `{"maintenance_mode": 0}`, enabled: "false"},
		{name: "json string", ctype: "application/json", body: `{"maintenance_mode": "true"}`, enabled: "true"},
		{name: "json null message", ctype: "application/json", body: `{"maintenance_mode_message": null}`, message: ptrTo("")},
		{name: "json object", ctype: "application/json", body: `{"maintenance_mode": {}}`, err: "maintenance_mode is invalid"},
		{name: "json message number", ctype: "application/json", body: `{"maintenance_mode_message": 5}`, err: "maintenance_mode_message is invalid"},
		{name: "not json", ctype: "application/json", body: `[`, err: "400 Bad request - the body is not a JSON object"},
		{name: "body wins over query", query: "maintenance_mode=true", ctype: "application/json", body: `{"maintenance_mode": false}`, enabled: "false"},
		{name: "message too long", query: "maintenance_mode_message=" + strings.Repeat("é", 256),
			err: "maintenance_mode_message is too long (maximum is 255 characters)"},
		{name: "message with newline", query: "maintenance_mode_message=a%0Ab", err: "maintenance_mode_message is invalid"},
		{name: "nothing", query: "signup_enabled=true", err: "at least one parameter must be provided: maintenance_mode, maintenance_mode_message"},
		{name: "xml", ctype: "application/xml", body: "<x/>", err: `400 Bad request - unsupported content type "application/xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", SettingsPath+"?"+tt.query, strings.NewReader(tt.body))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			c, err := parseChange(r)
			if tt.err != "" {
				got := ""
				if err != nil {
					if _, ok := err.(badRequest); ok {
						got = err.Error()
					} else {
						got = "400 Bad request - " + err.Error()
					}
				}
				if got != tt.err {
					t.Fatalf("error %q, want %q", got, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotEnabled := ""
			if c.Enabled != nil {
				gotEnabled = map[bool]string{true: "true", false: "false"}[*c.Enabled]
			}
			if gotEnabled != tt.enabled {
				t.Errorf("enabled %q, want %q", gotEnabled, tt.enabled)
			}
			if (c.Message == nil) != (tt.message == nil) || (c.Message != nil && *c.Message != *tt.message) {
				t.Errorf("message %v, want %v", c.Message, tt.message)
			}
		})
	}
}

func ptrTo(s string) *string { return &s }
