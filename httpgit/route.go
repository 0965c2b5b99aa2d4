package httpgit

import (
	"net/http"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
)

// endpoint is one of the three smart HTTP endpoints of a repository.
type endpoint int

const (
	endpointInfoRefs endpoint = iota + 1 // GET  /<repo>/info/refs?service=...
	endpointRPC                          // POST /<repo>/git-upload-pack | git-receive-pack
)

// route is a parsed smart HTTP request path.
type route struct {
	repo     string // as the client wrote it, without leading slash
	endpoint endpoint
	service  gitgate.Service
}

// routeError is an answer for a request that is not a valid smart HTTP
// request, before any repository is looked at.
type routeError struct {
	status int
	msg    string
}

var errNotFound = &routeError{http.StatusNotFound, "Not Found"}

// parseRoute maps a request to a smart HTTP endpoint. Unknown paths and dumb
// HTTP (info/refs without ?service, objects/..., HEAD) are 404; a known path
// with the wrong method is 405 (the caller sets Allow).
func parseRoute(r *http.Request) (route, *routeError) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if repo, ok := strings.CutSuffix(path, "/info/refs"); ok {
		if r.Method != http.MethodGet {
			return route{}, &routeError{http.StatusMethodNotAllowed, "Method Not Allowed"}
		}
		name := r.URL.Query().Get("service")
		if name == "" {
			return route{}, errNotFound // dumb HTTP is not served
		}
		svc, err := gitgate.ParseService(name)
		if err != nil || svc == gitgate.UploadArchive || !strings.HasPrefix(name, "git-") {
			return route{}, &routeError{http.StatusForbidden, "Unsupported service"}
		}
		return route{repo: repo, endpoint: endpointInfoRefs, service: svc}, nil
	}
	for _, svc := range [...]gitgate.Service{gitgate.UploadPack, gitgate.ReceivePack} {
		if repo, ok := strings.CutSuffix(path, "/"+string(svc)); ok {
			if r.Method != http.MethodPost {
				return route{}, &routeError{http.StatusMethodNotAllowed, "Method Not Allowed"}
			}
			return route{repo: repo, endpoint: endpointRPC, service: svc}, nil
		}
	}
	return route{}, errNotFound
}

// allowedMethods is the Allow header for a 405 on path.
func allowedMethods(path string) string {
	if strings.HasSuffix(path, "/info/refs") {
		return "GET"
	}
	return "POST"
}
