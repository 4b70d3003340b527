package buffer

// Last returns the position of the newest record of the queue that is not
// yet acknowledged, and false when there is none. Reading after it returns
// only records appended later: the uplink uses it to start its live lane
// at the tail and leave what lies before to the backlog lane.
func (q *Queue) Last() (Pos, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := len(q.frames) - 1; i >= 0; i-- {
		if fi := q.frames[i]; !fi.dead && fi.count > 0 {
			fi.served = true // its position leaves the buffer: never merge it
			return Pos{Frame: fi.id, Index: fi.count - 1}, true
		}
	}
	return Pos{}, false
}
