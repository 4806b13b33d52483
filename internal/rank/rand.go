package rank

import "math/rand/v2"

// Rand is a tiny generator seeded on first use from the runtime's: a draw
// per candidate from math/rand would cost more than the rest of a choice.
// The zero value is ready; it is not safe for concurrent use.
type Rand struct{ x uint64 }

// Below returns a number in [0, n) (multiply-shift; the bias is below 2⁻³²).
func (r *Rand) Below(n uint32) uint32 {
	if r.x == 0 {
		r.seed()
	}
	v := r.x
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	r.x = v
	return uint32((v >> 32) * uint64(n) >> 32)
}

func (r *Rand) seed() { r.x = rand.Uint64() | 1 }
