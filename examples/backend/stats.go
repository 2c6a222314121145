package backend

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of the Backend's counters, returned by Backend.Stats.
// Counters only grow, except WSOpen. The maps are copies owned by the caller.
// Every counter of something a client can observe (an answer, a frame, a
// close) is updated before the client can observe it, so a test may read
// Stats right after seeing the effect.
type Stats struct {
	// Requests counts HTTP requests by path ("/auth/refresh", "/echo", ...);
	// requests to unknown paths are counted under "(unmatched)".
	Requests map[string]int64

	Signups       int64 // successful POST /auth/signup (and CreateUser)
	Logins        int64 // successful POST /auth/login
	LoginFailures int64 // POST /auth/login answered 401
	Logouts       int64 // POST /auth/logout that revoked a refresh token

	// RefreshCalls counts every POST /auth/refresh, including those answered
	// by the refresh hook and those rejected.
	RefreshCalls     int64
	RefreshSucceeded int64 // refreshes that rotated a token
	RefreshRejected  int64 // refreshes answered 400/401 (bad body, unknown, used or expired token)
	Unauthorized     int64 // bearer-protected HTTP requests answered 401

	GhostRegistrations int64 // successful POST /chat/ghost/register (and RegisterGhost)
	ChatMessages       int64 // messages stored in chat:universal (HTTP or websocket)

	WSOpen       int64 // websocket connections currently open (decremented before the server drops the TCP connection)
	WSTotal      int64 // websocket connections accepted since New
	InitFrames   int64 // `init` frames received
	InitAcks     int64 // `init_ack` frames sent
	UpdateFrames int64 // `update` frames received
	UpdateAcks   int64 // `update` frames accepted (acked)
	Joins        int64 // `join` frames accepted (acked)
	Leaves       int64 // `leave` frames received
	Emits        int64 // `emit` frames accepted (acked)
	// EmitDuplicates counts emits whose emitId was seen before: acked
	// again, not published.
	EmitDuplicates int64
	EventsSent     int64 // `event` frames queued to connections (including replays)
	Replayed       int64 // `event` frames queued as replays after a recovered join
	Pings          int64 // `ping` frames received
	SlowConsumers  int64 // connections closed with 4001

	// Closes counts the close codes the server sent (or, for a client that
	// closed first, echoed), by code. 1006 counts connections that ended
	// without a close frame.
	Closes map[int]int64
}

// counters holds the live counters; every field is safe for concurrent use.
type counters struct {
	signups, logins, loginFailures, logouts         atomic.Int64
	refreshCalls, refreshSucceeded, refreshRejected atomic.Int64
	unauthorized, ghostRegistrations, chatMessages  atomic.Int64
	wsOpen, wsTotal, initFrames, initAcks           atomic.Int64
	updateFrames, updateAcks, joins, leaves, emits  atomic.Int64
	eventsSent, replayed, pings, slowConsumers      atomic.Int64
	emitDuplicates                                  atomic.Int64
	mu                                              sync.Mutex
	requests                                        map[string]int64
	closes                                          map[int]int64
}

func newCounters() *counters {
	return &counters{requests: make(map[string]int64), closes: make(map[int]int64)}
}

func (c *counters) request(path string) {
	c.mu.Lock()
	c.requests[path]++
	c.mu.Unlock()
}

func (c *counters) closed(code int) {
	c.mu.Lock()
	c.closes[code]++
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	req := maps.Clone(c.requests)
	cl := maps.Clone(c.closes)
	c.mu.Unlock()
	return Stats{
		Requests:           req,
		Signups:            c.signups.Load(),
		Logins:             c.logins.Load(),
		LoginFailures:      c.loginFailures.Load(),
		Logouts:            c.logouts.Load(),
		RefreshCalls:       c.refreshCalls.Load(),
		RefreshSucceeded:   c.refreshSucceeded.Load(),
		RefreshRejected:    c.refreshRejected.Load(),
		Unauthorized:       c.unauthorized.Load(),
		GhostRegistrations: c.ghostRegistrations.Load(),
		ChatMessages:       c.chatMessages.Load(),
		WSOpen:             c.wsOpen.Load(),
		WSTotal:            c.wsTotal.Load(),
		InitFrames:         c.initFrames.Load(),
		InitAcks:           c.initAcks.Load(),
		UpdateFrames:       c.updateFrames.Load(),
		UpdateAcks:         c.updateAcks.Load(),
		Joins:              c.joins.Load(),
		Leaves:             c.leaves.Load(),
		Emits:              c.emits.Load(),
		EmitDuplicates:     c.emitDuplicates.Load(),
		EventsSent:         c.eventsSent.Load(),
		Replayed:           c.replayed.Load(),
		Pings:              c.pings.Load(),
		SlowConsumers:      c.slowConsumers.Load(),
		Closes:             cl,
	}
}
