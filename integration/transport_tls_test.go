package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestTransportHTTPSUpstreamHost checks that the edgetier transport sends
// an HTTPS upstream its own host:port as Host, as Caddy's http transport
// does, not the client's: edges behind TLS route and log by it. The
// upstream answers with the Host it received.
func TestTransportHTTPSUpstreamHost(t *testing.T) {
	tests := []struct {
		name, transport string
	}{
		{"caddy http transport", "transport http {\n\t\t\ttls_insecure_skip_verify\n\t\t}"},
		{"edgetier transport", "transport edgetier {\n\t\t\thttp {\n\t\t\t\ttls_insecure_skip_verify\n\t\t\t}\n\t\t}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstreamPort, lbPort := freePort(t), freePort(t)
			cfg := fmt.Sprintf(`{
	admin %%ADMIN%%
	auto_https disable_redirects
	skip_install_trust
	local_certs
}

https://127.0.0.1:%d {
	tls internal
	respond "{http.request.host}:{http.request.port}"
}

http://127.0.0.1:%d {
	reverse_proxy https://127.0.0.1:%d {
		%s
	}
}
`, upstreamPort, lbPort, upstreamPort, tt.transport)
			startCaddy(t, "tls", cfg, cluster.Options{})
			client := &http.Client{Timeout: 10 * time.Second}
			var got string
			// The internal CA issues the upstream's certificate just after
			// start; until then the proxy answers 502.
			eventually(t, 20*time.Second, "the proxy to answer", func() (bool, string) {
				resp, err := client.Get(fmt.Sprintf("http://%s/", addr(lbPort)))
				if err != nil {
					return false, err.Error()
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return false, fmt.Sprintf("status %d: %s", resp.StatusCode, body)
				}
				got = string(body)
				return true, ""
			})
			if want := addr(upstreamPort); got != want {
				t.Errorf("upstream received Host %q, want %q (its own host:port)", got, want)
			}
		})
	}
}
