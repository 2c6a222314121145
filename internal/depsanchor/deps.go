// Package depsanchor pins the module's dependencies while the tree is being built.
package depsanchor

import (
	_ "github.com/asynkron/protoactor-go/actor"
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/gorilla/websocket"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "go.uber.org/zap/exp/zapslog"
	_ "go.uber.org/zap/zaptest"
)
