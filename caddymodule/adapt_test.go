package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the adapt golden files")

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, the expected JSON) and the project's own
// Caddyfiles, and compares with the expected JSON.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatalf("%s: no ---------- separator", file)
			}
			input += "\n"
			if *update {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(input+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, file, input, "caddyfile", strings.TrimSpace(expected)) {
				t.Fail()
			}
		})
	}
}

// TestProjectCaddyfilesAdapt adapts the Caddyfiles users run (the default
// system, the Compose ones) and every ```caddyfile example of the README.
func TestProjectCaddyfilesAdapt(t *testing.T) {
	t.Setenv("VIDEO_DIR", "/srv/videos")
	t.Setenv("DASHBOARD_PASSWORD_HASH", "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG")
	inputs := map[string]string{}
	for _, pattern := range []string{"../Caddyfile", "../deploy/*.Caddyfile"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			inputs[f] = string(data)
		}
	}
	if _, ok := inputs["../Caddyfile"]; !ok {
		t.Fatal("no top-level Caddyfile")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := strings.Split(string(readme), "```caddyfile\n")
	for i, block := range examples[1:] {
		body, _, ok := strings.Cut(block, "```")
		if !ok {
			t.Fatalf("README example %d is not closed", i+1)
		}
		inputs["README example "+strconv.Itoa(i+1)] = body
	}
	if len(examples) < 4 {
		t.Fatalf("README has %d Caddyfile examples, want one per directive at least", len(examples)-1)
	}
	for name, input := range inputs {
		t.Run(name, func(t *testing.T) {
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err != nil {
				t.Fatalf("%s does not adapt: %v", name, err)
			}
			for _, w := range warnings {
				if !strings.Contains(w.Message, "not formatted") {
					t.Errorf("%s: warning: %s", name, w.String())
				}
			}
			if !json.Valid(out) {
				t.Fatalf("%s: adapted to invalid JSON", name)
			}
		})
	}
}
