package rank

import "math/rand/v2"

// Rand is a tiny generator seeded on first use from the runtime's: a draw
// per candidate from math/rand would cost more than the rest of a choice.
// The zero value is ready; it is not safe for concurrent use.
type Rand struct{ x uint64 }

// Below returns a number in [0, n) (multiply-shift; the bias is below 2⁻³²).
func (r *Rand) Below(n uint32) uint32 {
	v := r.x
	if v == 0 {
		v = rand.Uint64() | 1
	}
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	r.x = v
	return uint32((v >> 32) * uint64(n) >> 32)
}
