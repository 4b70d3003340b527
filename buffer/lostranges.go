package buffer

import (
	"cmp"
	"io"
	"slices"
	"sort"
)

// LostRange is a range of sequence numbers of one series known lost in a
// damaged file: the numbers between two records of the series recovered
// on either side of frames found damaged, or (To 0) the numbers after the
// series' last recovered record when damaged frames follow it: they end
// where the series' numbering stopped, which the caller knows (see
// Options.Series). The numbers of a range may include samples dropped
// earlier on purpose and counted then (their gap was already there).
type LostRange struct {
	Queue  string
	Series string
	// From and To are the first and last number of the range; To is 0
	// for a range open at its end.
	From, To uint64
}

// maxLostRanges bounds the ranges a Recovery lists (the series with the
// most numbers lost first); LostSeries and LostSeqs count them all.
const maxLostRanges = 50

// seriesSpan is the part of one frame holding records of one series.
type seriesSpan struct {
	frame       uint64
	first, last uint64
}

// lostRanges finds, for the queues with lost frames, the sequence ranges
// of each series that lie between its recovered records around the lost
// frames. kept are the intact frames (sorted by queue and id), lost the
// damaged frames with an id, names the queue names by tag. series says
// which series and number a record carries. It returns every range, the
// closed ones first (longest first), then the open ones.
func lostRanges(r io.ReaderAt, kept, lost []found, names map[uint32]string, series func([]byte) (string, uint64, bool)) ([]LostRange, error) {
	if series == nil || len(lost) == 0 {
		return nil, nil
	}
	lostIDs := map[uint32][]uint64{}
	for _, fr := range lost {
		lostIDs[fr.h.loc.queue] = append(lostIDs[fr.h.loc.queue], fr.h.loc.id)
	}
	for _, ids := range lostIDs {
		slices.Sort(ids)
	}
	spans := map[uint32]map[string][]seriesSpan{}
	var buf, scratch []byte
	for _, fr := range kept {
		q := fr.h.loc.queue
		if len(lostIDs[q]) == 0 {
			continue
		}
		var err error
		if buf, err = readAt(r, fr.off, fr.length, buf); err != nil {
			return nil, err
		}
		recs, err := rawRecords(buf, fr.h, scratch)
		if err != nil {
			continue
		}
		if isShared(buf[0]) {
			scratch = recs
		}
		m := spans[q]
		if m == nil {
			m = map[string][]seriesSpan{}
			spans[q] = m
		}
		for off := 0; off < len(recs); {
			start, end := nextRecord(recs, off)
			off = end
			s, seq, ok := series(recs[start:end])
			if !ok {
				continue
			}
			l := m[s]
			if n := len(l); n > 0 && l[n-1].frame == fr.h.loc.id {
				l[n-1].first, l[n-1].last = min(l[n-1].first, seq), max(l[n-1].last, seq)
				continue
			}
			m[s] = append(l, seriesSpan{frame: fr.h.loc.id, first: seq, last: seq})
		}
	}
	var out []LostRange
	for q, m := range spans {
		ids := lostIDs[q]
		// lostBetween reports whether a lost frame lies after a (and
		// before b, when b is not 0).
		lostBetween := func(a, b uint64) bool {
			i := sort.Search(len(ids), func(i int) bool { return ids[i] > a })
			return i < len(ids) && (b == 0 || ids[i] < b)
		}
		for s, l := range m {
			slices.SortFunc(l, func(a, b seriesSpan) int { return cmp.Compare(a.frame, b.frame) })
			// hi is the highest number seen so far: stale copies of
			// merged frames may repeat numbers.
			hi := l[0].last
			for i := 0; i+1 < len(l); i++ {
				if l[i+1].first > hi+1 && lostBetween(l[i].frame, l[i+1].frame) {
					out = append(out, LostRange{Queue: names[q], Series: s, From: hi + 1, To: l[i+1].first - 1})
				}
				hi = max(hi, l[i+1].last)
			}
			if lostBetween(l[len(l)-1].frame, 0) {
				out = append(out, LostRange{Queue: names[q], Series: s, From: hi + 1})
			}
		}
	}
	SortLostRanges(out)
	return out, nil
}

// SortLostRanges orders ranges: closed ones first, longest first, then
// open ones; ties by queue, series and start.
func SortLostRanges(rs []LostRange) {
	slices.SortFunc(rs, func(a, b LostRange) int {
		if (a.To == 0) != (b.To == 0) {
			if a.To == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(b.To-b.From, a.To-a.From), cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.Series, b.Series), cmp.Compare(a.From, b.From))
	})
}

// Len returns the number of sequence numbers in the range (0 when it is
// open).
func (r LostRange) Len() uint64 {
	if r.To == 0 || r.To < r.From {
		return 0
	}
	return r.To - r.From + 1
}

// summarize ends the ranges open at their end with last (the last number
// of each series, nil when unknown), drops those where nothing is missing,
// and returns them (at most maxLostRanges) with their count, the series
// they touch and the numbers in them.
func summarizeRanges(rs []LostRange, last map[string]uint64) (out []LostRange, count, series int, seqs uint64) {
	if last != nil {
		kept := rs[:0]
		for _, l := range rs {
			if l.To == 0 {
				n, ok := last[l.Series]
				if ok && n < l.From {
					continue // nothing after the last recovered record
				}
				if ok {
					l.To = n
				}
			}
			kept = append(kept, l)
		}
		rs = kept
		SortLostRanges(rs)
	}
	seen := map[[2]string]bool{}
	for _, l := range rs {
		seen[[2]string{l.Queue, l.Series}] = true
		seqs += l.Len()
	}
	count, series = len(rs), len(seen)
	if len(rs) > maxLostRanges {
		rs = slices.Clip(rs[:maxLostRanges])
	}
	return rs, count, series, seqs
}
