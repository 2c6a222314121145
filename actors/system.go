package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// SystemOption configures NewSystem.
type SystemOption func(*[]actor.ConfigOption)

// WithDeadLetterThrottle sets protoactor's dead-letter throttle interval.
// protoactor starts a goroutine that lives one interval whenever a dead letter
// is logged; tests shorten it so that goleak sees it gone. Zero value (option
// not given) means protoactor's default of 1s.
func WithDeadLetterThrottle(d time.Duration) SystemOption {
	return func(o *[]actor.ConfigOption) {
		*o = append(*o, actor.WithDeadLetterThrottleInterval(d))
	}
}

// NewSystem returns an ActorSystem whose own log output goes to logger (through
// zapslog) instead of protoactor's default stderr handler. A nil logger
// discards it. No metrics provider is installed (protoactor's default
// Prometheus provider would bind :2222).
func NewSystem(logger *zap.Logger, opts ...SystemOption) *actor.ActorSystem {
	cfg := []actor.ConfigOption{
		actor.WithLoggerFactory(func(system *actor.ActorSystem) *slog.Logger {
			return SlogFor(logger).With("lib", "protoactor", "system", system.ID)
		}),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return actor.NewActorSystem(cfg...)
}

// SlogFor bridges a zap logger into log/slog; nil gives a logger that
// discards everything.
func SlogFor(logger *zap.Logger) *slog.Logger {
	if logger == nil {
		logger = zap.NewNop()
	}
	return slog.New(zapslog.NewHandler(logger.Core()))
}
