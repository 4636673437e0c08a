package keyq

// Held is the number of messages q holds.
func (q *Queue) Held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.held)
}
