package main

import (
	"net"
	"sync"
	"time"
)

// delayListener accepts connections whose writes reach the peer d later:
// the broker's answers arrive as over a link with one-way latency d (a
// remote broker), in order, and a client with several requests in flight on
// one connection gets every answer d late, not each after the one before
// (a sleep in Write would serialize them).
type delayListener struct {
	net.Listener
	d time.Duration
}

func (l delayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	dc := &delayConn{Conn: c, d: l.d, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go dc.send()
	return dc, nil
}

type delayConn struct {
	net.Conn
	d          time.Duration
	mu         sync.Mutex
	queue      []delayed
	err        error // the last write's, returned by the next Write
	wake, done chan struct{}
	closeOnce  sync.Once
}

type delayed struct {
	at time.Time
	b  []byte
}

// Write queues a copy of p, to be written d from now.
func (c *delayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.queue = append(c.queue, delayed{at: time.Now().Add(c.d), b: append([]byte(nil), p...)})
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// send writes the queued bytes, each when its time comes.
func (c *delayConn) send() {
	for {
		c.mu.Lock()
		var next *delayed
		if len(c.queue) > 0 {
			next = &c.queue[0]
		}
		c.mu.Unlock()
		if next == nil {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		if wait := time.Until(next.at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return
			}
		}
		_, err := c.Conn.Write(next.b)
		c.mu.Lock()
		c.queue = c.queue[1:]
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
	}
}

func (c *delayConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Conn.Close()
}
