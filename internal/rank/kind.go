package rank

// Kind is what a selection was made on, counted per upstream: the tier it
// was chosen from, or why no tier decided.
type Kind uint8

// The kinds of selection.
const (
	KindUnknown  Kind = iota // no trusted fresh report: counted as average
	KindTier1                // chosen from tier 1 …
	KindTier2                //
	KindTier3                //
	KindTier4                // … to tier 4
	KindFallback             // no fresh report anywhere: least in flight
	KindDrain                // only draining upstreams could serve
	KindDown                 // only upstreams seen down could serve
	NumKinds
)

// KindLabels label the kinds in metrics.
var KindLabels = [NumKinds]string{"unknown", "1", "2", "3", "4", "fallback", "drain", "down"}

// KindOf is the kind of a selection from tier t.
func KindOf(t Tier) Kind {
	if t < 1 || t > 4 {
		return KindUnknown
	}
	return KindTier1 + Kind(t-1)
}
