package access

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func basic(userpass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))
}

func TestParseCredentials(t *testing.T) {
	const tok = "ggt_abcDEF123-_xyz"
	tests := []struct {
		name    string
		header  http.Header
		want    Credentials
		wantErr error
	}{
		{"none", http.Header{}, Credentials{}, ErrNoCredentials},
		{"private token", http.Header{"Private-Token": {tok}}, Credentials{Token: tok, Scheme: "private-token"}, nil},
		{"bearer", http.Header{"Authorization": {"Bearer " + tok}}, Credentials{Token: tok, Scheme: "bearer"}, nil},
		{"bearer lower case", http.Header{"Authorization": {"bearer " + tok}}, Credentials{Token: tok, Scheme: "bearer"}, nil},
		{"basic oauth2", http.Header{"Authorization": {basic("oauth2:" + tok)}}, Credentials{Token: tok, Username: "oauth2", Scheme: "basic"}, nil},
		{"basic any user", http.Header{"Authorization": {basic("alice:" + tok)}}, Credentials{Token: tok, Username: "alice", Scheme: "basic"}, nil},
		{"basic empty user", http.Header{"Authorization": {basic(":" + tok)}}, Credentials{Token: tok, Scheme: "basic"}, nil},
		{"basic colon in token is kept", http.Header{"Authorization": {basic("u:a:b")}}, Credentials{Token: "a:b", Username: "u", Scheme: "basic"}, nil},
		{"basic without password", http.Header{"Authorization": {basic("alice:")}}, Credentials{}, ErrMalformedCredentials},
		{"basic without colon", http.Header{"Authorization": {basic("alice")}}, Credentials{}, ErrMalformedCredentials},
		{"basic bad base64", http.Header{"Authorization": {"Basic !!!"}}, Credentials{}, ErrMalformedCredentials},
		{"basic control in user", http.Header{"Authorization": {basic("al\x00ice:" + tok)}}, Credentials{}, ErrMalformedCredentials},
		{"basic newline in token", http.Header{"Authorization": {basic("u:ggt_a\nb")}}, Credentials{}, ErrMalformedCredentials},
		{"basic non-ascii token", http.Header{"Authorization": {basic("u:ggt_\xffb")}}, Credentials{}, ErrMalformedCredentials},
		{"bearer empty", http.Header{"Authorization": {"Bearer "}}, Credentials{}, ErrMalformedCredentials},
		{"bearer with space", http.Header{"Authorization": {"Bearer a b"}}, Credentials{}, ErrMalformedCredentials},
		{"unknown scheme", http.Header{"Authorization": {"Digest x"}}, Credentials{}, ErrMalformedCredentials},
		{"empty authorization", http.Header{"Authorization": {""}}, Credentials{}, ErrMalformedCredentials},
		{"empty private token", http.Header{"Private-Token": {""}}, Credentials{}, ErrMalformedCredentials},
		{"two authorization headers", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, Credentials{}, ErrMalformedCredentials},
		{"private token and authorization", http.Header{"Private-Token": {tok}, "Authorization": {"Bearer " + tok}}, Credentials{}, ErrMalformedCredentials},
		{"huge header", http.Header{"Authorization": {"Bearer " + strings.Repeat("a", 10000)}}, Credentials{}, ErrMalformedCredentials},
		{"huge token", http.Header{"Private-Token": {strings.Repeat("a", maxTokenLength+1)}}, Credentials{}, ErrMalformedCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCredentials(tt.header)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseCredentials = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
