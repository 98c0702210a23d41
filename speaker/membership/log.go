package membership

import (
	"bytes"
	"errors"
	"log"
	"strings"

	"k8s.io/klog/v2"
)

// newStdLogger returns the *log.Logger memberlist writes to, bridged into logger, so its
// lines never reach stderr unformatted.
// The hooks hear what memberlist tells only in its log.
func newStdLogger(logger klog.Logger, hooks logHooks) *log.Logger {
	return log.New(logBridge{logger: logger, hooks: hooks}, "", 0)
}

// logHooks are called for the lines that tell of what memberlist has no event for; nil
// hooks are not called. They run on memberlist's goroutines, some with its locks held:
// they must not block or call into memberlist.
type logHooks struct {
	// onRefute: this node refuted another's claim that it failed ("Refuting a ...").
	onRefute func()
	// onSuspect: this node's probe of a member went unanswered ("Suspect X has failed,
	// no acks received").
	onSuspect func(name string)
}

// logBridge turns memberlist's "[LEVEL] memberlist: text" lines into klog calls at the
// levels of berth's style guide: debug chatter (every stream connection) at V(4),
// state changes at V(2), warnings at V(0), errors as errors.
type logBridge struct {
	logger klog.Logger
	hooks  logHooks
}

func (b logBridge) Write(p []byte) (int, error) {
	level, text := splitLogLine(p)
	switch level {
	case "DEBUG", "TRACE":
		b.logger.V(4).Info("Memberlist message", "text", text)
	case "INFO":
		b.logger.V(2).Info("Memberlist message", "text", text)
		if rest, ok := strings.CutPrefix(text, "Suspect "); ok && b.hooks.onSuspect != nil {
			if name, ok := strings.CutSuffix(rest, " has failed, no acks received"); ok {
				b.hooks.onSuspect(name)
			}
		}
	case "WARN":
		b.logger.Info("Memberlist warning", "text", text)
		if b.hooks.onRefute != nil && strings.HasPrefix(text, "Refuting a") {
			b.hooks.onRefute()
		}
	case "ERR", "ERROR":
		b.logger.Error(errors.New(text), "Memberlist error")
	default:
		b.logger.V(2).Info("Memberlist message", "text", text)
	}
	return len(p), nil
}

// splitLogLine splits "[WARN] memberlist: text\n" into "WARN" and "text". A line without
// a level comes back whole with an empty level.
func splitLogLine(p []byte) (level, text string) {
	line := bytes.TrimSpace(p)
	if rest, ok := bytes.CutPrefix(line, []byte("[")); ok {
		if lvl, after, ok := bytes.Cut(rest, []byte("] ")); ok {
			level, line = string(lvl), after
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	return level, string(line)
}
