package caddymodule

import (
	"net/http"
	"net/textproto"
	"strings"
)

// unsatisfiableRange is a Range header no file can satisfy: it starts past
// the end of any file, so Go's file serving (Caddy's file_server) answers
// 416 with Content-Range: bytes */size.
const unsatisfiableRange = "bytes=9223372036854775807-"

// dropEmptySuffixRanges removes zero-length suffix ranges (bytes=-0) from
// a GET or HEAD request's Range header. RFC 9110 §14.1.2: such a range is
// unsatisfiable, but Go's file serving answers it with 206 and an empty,
// inverted Content-Range (bytes size-(size-1)/size). Beside other ranges it
// is dropped; alone it becomes a range that file_server answers with 416.
func dropEmptySuffixRanges(r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return
	}
	if h := r.Header.Get("Range"); h != "" {
		if fixed, changed := withoutEmptySuffixRanges(h); changed {
			r.Header.Set("Range", fixed)
		}
	}
}

// withoutEmptySuffixRanges is dropEmptySuffixRanges on a header value. It
// reads the header as Go's file serving does, and changes nothing else.
func withoutEmptySuffixRanges(h string) (string, bool) {
	specs, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return h, false
	}
	var kept []string
	dropped := false
	for spec := range strings.SplitSeq(specs, ",") {
		start, end, ok := strings.Cut(textproto.TrimString(spec), "-")
		if ok && textproto.TrimString(start) == "" && allZeros(textproto.TrimString(end)) {
			dropped = true
			continue
		}
		if textproto.TrimString(spec) != "" {
			kept = append(kept, spec)
		}
	}
	switch {
	case !dropped:
		return h, false
	case len(kept) == 0:
		return unsatisfiableRange, true
	}
	return "bytes=" + strings.Join(kept, ","), true
}

// allZeros reports whether s is one or more '0' digits.
func allZeros(s string) bool {
	return s != "" && strings.Trim(s, "0") == ""
}
