package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// mp4Duration reads a file's length of play from its movie header (moov >
// mvhd): a player knows a title's bitrate only from there.
func mp4Duration(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	moov, size, err := findBox(f, 0, st.Size(), "moov")
	if err != nil {
		return 0, err
	}
	mvhd, _, err := findBox(f, moov, size, "mvhd")
	if err != nil {
		return 0, err
	}
	var head [32]byte
	if _, err := f.ReadAt(head[:], mvhd); err != nil {
		return 0, fmt.Errorf("mvhd: %w", err)
	}
	var scale, units uint64
	switch head[0] { // version
	case 0: // 32-bit times: created, modified, timescale, duration
		scale, units = uint64(binary.BigEndian.Uint32(head[12:])), uint64(binary.BigEndian.Uint32(head[16:]))
	case 1: // 64-bit times
		scale, units = uint64(binary.BigEndian.Uint32(head[20:])), binary.BigEndian.Uint64(head[24:])
	default:
		return 0, fmt.Errorf("mvhd version %d", head[0])
	}
	if scale == 0 || units == 0 {
		return 0, fmt.Errorf("mvhd: timescale %d, duration %d", scale, units)
	}
	return time.Duration(units * uint64(time.Second) / scale), nil
}

// findBox returns the offset of the body of the first box of kind among
// the boxes in [from, from+n), and the body's size.
func findBox(r io.ReaderAt, from, n int64, kind string) (int64, int64, error) {
	for off := from; off+8 <= from+n; {
		var h [16]byte
		if _, err := r.ReadAt(h[:8], off); err != nil {
			return 0, 0, err
		}
		size, head := int64(binary.BigEndian.Uint32(h[:4])), int64(8)
		switch size {
		case 1: // a 64-bit size follows the type
			if _, err := r.ReadAt(h[8:16], off+8); err != nil {
				return 0, 0, err
			}
			size, head = int64(binary.BigEndian.Uint64(h[8:16])), 16
		case 0: // to the end
			size = from + n - off
		}
		if size < head {
			return 0, 0, fmt.Errorf("box %q at %d: size %d", h[4:8], off, size)
		}
		if string(h[4:8]) == kind {
			return off + head, size - head, nil
		}
		off += size
	}
	return 0, 0, fmt.Errorf("no %s box", kind)
}
