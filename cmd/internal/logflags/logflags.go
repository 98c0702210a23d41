// Package logflags gives berth's binaries --log-format and --log-level, and makes the
// logger they describe the process's only sink: klog (and through it client-go,
// controller-runtime, GoBGP's and memberlist's bridges) writes there.
package logflags

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Levels names the verbosities berth logs at (STYLE.md §5): V(0) what an operator must
// see, V(2) every state change and decision, V(4) debugging, V(5) per packet.
var Levels = map[string]int{"info": 0, "verbose": 2, "debug": 4, "trace": 5}

// maxLevel bounds numeric levels: klog's own flag accepts up to int32, nothing logs above 10.
const maxLevel = 10

// Options are the parsed flags.
type Options struct {
	Format string // "text" or "json"
	Level  int
}

// AddFlags registers --log-format and --log-level on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	o.Format = "text"
	fs.StringVar(&o.Format, "log-format", o.Format, `"text" (klog's header and key=value pairs) or "json" (one object per line)`)
	fs.Func("log-level", `info, verbose (every state change and decision), debug, trace (per packet), or a number 0-10 (default info)`,
		func(s string) error {
			l, err := ParseLevel(s)
			o.Level = l
			return err
		})
}

// ParseLevel reads a level name or number.
func ParseLevel(s string) (int, error) {
	if l, ok := Levels[strings.ToLower(s)]; ok {
		return l, nil
	}
	l, err := strconv.Atoi(s)
	if err != nil || l < 0 || l > maxLevel {
		return 0, fmt.Errorf("%q is not a log level: want info, verbose, debug, trace or 0-%d", s, maxLevel)
	}
	return l, nil
}

// Logger builds the logger the options describe, writing to w.
func (o Options) Logger(w io.Writer) (logr.Logger, error) {
	switch o.Format {
	case "text":
		return textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(o.Level), textlogger.Output(w))), nil
	case "json":
		h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.Level(-o.Level), ReplaceAttr: levelName})
		return logr.FromSlogHandler(verbosityHandler{h}), nil
	}
	return logr.Discard(), fmt.Errorf("--log-format %q: want text or json", o.Format)
}

// Apply makes the options' logger klog's and controller-runtime's, and sets klog's own
// verbosity, which libraries calling klog.V(n) directly consult.
func (o Options) Apply(w io.Writer) error {
	l, err := o.Logger(w)
	if err != nil {
		return err
	}
	var fs flag.FlagSet
	klog.InitFlags(&fs)
	if err := fs.Set("v", strconv.Itoa(o.Level)); err != nil {
		return err
	}
	klog.SetLogger(l)
	ctrllog.SetLogger(l)
	return nil
}

// levelName writes slog's level as "info" or "error": logr's V(n) arrives as level -n,
// which slog would print as "DEBUG+2"; verbosityHandler records n itself.
func levelName(_ []string, a slog.Attr) slog.Attr {
	if a.Key != slog.LevelKey {
		return a
	}
	if l, ok := a.Value.Any().(slog.Level); ok && l >= slog.LevelError {
		return slog.String(slog.LevelKey, "error")
	}
	return slog.String(slog.LevelKey, "info")
}

// verbosityHandler adds "v" (the logr verbosity) to every info record, as Kubernetes'
// JSON format does.
type verbosityHandler struct{ slog.Handler }

func (h verbosityHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		r.AddAttrs(slog.Int("v", -int(r.Level)))
	}
	return h.Handler.Handle(ctx, r)
}

func (h verbosityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return verbosityHandler{h.Handler.WithAttrs(as)}
}

func (h verbosityHandler) WithGroup(name string) slog.Handler {
	return verbosityHandler{h.Handler.WithGroup(name)}
}
