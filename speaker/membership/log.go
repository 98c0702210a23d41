package membership

import (
	"bytes"
	"errors"
	"log"

	"k8s.io/klog/v2"
)

// newStdLogger returns the *log.Logger memberlist writes to, bridged into logger, so its
// lines never reach stderr unformatted.
func newStdLogger(logger klog.Logger) *log.Logger {
	return log.New(logBridge{logger: logger}, "", 0)
}

// logBridge turns memberlist's "[LEVEL] memberlist: text" lines into klog calls at the
// levels of berth's style guide: debug chatter (every stream connection) at V(4),
// state changes at V(2), warnings at V(0), errors as errors.
type logBridge struct {
	logger klog.Logger
}

func (b logBridge) Write(p []byte) (int, error) {
	level, text := splitLogLine(p)
	switch level {
	case "DEBUG", "TRACE":
		b.logger.V(4).Info("Memberlist message", "text", text)
	case "INFO":
		b.logger.V(2).Info("Memberlist message", "text", text)
	case "WARN":
		b.logger.Info("Memberlist warning", "text", text)
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
