package controlplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// auditPolicy records every request at Metadata level (who, what, verb, response code)
// once it completes; bodies stay out, so the log stays small enough for every run.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// AuditEvent is the part of an audit.k8s.io/v1 Event the lab reads. It is declared here
// rather than imported from k8s.io/apiserver, which would pull the apiserver's
// dependencies into every test binary for five fields.
type AuditEvent struct {
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	UserAgent  string `json:"userAgent,omitempty"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups,omitempty"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource,omitempty"`
		Namespace   string `json:"namespace,omitempty"`
		Name        string `json:"name,omitempty"`
		APIGroup    string `json:"apiGroup,omitempty"`
		Subresource string `json:"subresource,omitempty"`
	} `json:"objectRef,omitempty"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Reason  string `json:"reason,omitempty"`
		Message string `json:"message,omitempty"`
	} `json:"responseStatus,omitempty"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// Code is the response's HTTP status code, 0 if the event has none.
func (e AuditEvent) Code() int {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// String is a one-line description for test failures, e.g.
// "system:serviceaccount:berth-system:speaker list services (403)".
func (e AuditEvent) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.User.Username, e.Verb)
	if r := e.ObjectRef; r != nil {
		res := r.Resource
		if r.APIGroup != "" {
			res += "." + r.APIGroup
		}
		if r.Subresource != "" {
			res += "/" + r.Subresource
		}
		fmt.Fprintf(&b, " %s", res)
		if r.Namespace != "" || r.Name != "" {
			fmt.Fprintf(&b, " %s/%s", r.Namespace, r.Name)
		}
	} else {
		fmt.Fprintf(&b, " %s", e.RequestURI)
	}
	fmt.Fprintf(&b, " (%d)", e.Code())
	return b.String()
}

// ErrAuditLine means a complete line of the audit log is not an audit event.
var ErrAuditLine = errors.New("malformed audit log line")

// ReadAudit parses an audit log. A last line without its newline is skipped: the
// apiserver may be writing it right now.
func ReadAudit(r io.Reader) ([]AuditEvent, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var events []AuditEvent
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return events, nil // a partial last line, or none
		}
		if err != nil {
			return events, fmt.Errorf("audit log: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e AuditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return events, fmt.Errorf("audit log line %d: %w: %w", n, ErrAuditLine, err)
		}
		events = append(events, e)
	}
}

// ReadAuditFile parses the audit log at path.
func ReadAuditFile(path string) ([]AuditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	events, err := ReadAudit(f)
	if err != nil {
		return events, fmt.Errorf("%s: %w", path, err)
	}
	return events, nil
}

// Forbidden returns the completed requests that were refused with 403, by user name.
// Only users for which keep returns true are kept; nil keeps all.
func Forbidden(events []AuditEvent, keep func(user string) bool) map[string][]AuditEvent {
	out := map[string][]AuditEvent{}
	for _, e := range events {
		if e.Stage != "ResponseComplete" || e.Code() != 403 {
			continue
		}
		if keep != nil && !keep(e.User.Username) {
			continue
		}
		out[e.User.Username] = append(out[e.User.Username], e)
	}
	return out
}

// ServiceAccountsIn keeps the users that are ServiceAccounts of namespace, for Forbidden.
func ServiceAccountsIn(namespace string) func(string) bool {
	prefix := "system:serviceaccount:" + namespace + ":"
	return func(user string) bool { return strings.HasPrefix(user, prefix) }
}

// Forbidden reads the audit log so far and returns the requests refused with 403, by
// user, of the users keep accepts (nil: all). Later tests assert that berth's
// ServiceAccounts have none.
//
// Requests the apiserver received while it was starting (Up, or Start after Stop) and not
// yet ready are left out: it serves before its RBAC authorizer has synced, and refuses
// everything meanwhile (clients retrying through a restart see a burst of 403s). In a
// cluster a load balancer keeps clients away from an apiserver until /readyz passes; the
// lab has none.
func (c *Cluster) Forbidden(keep func(user string) bool) (map[string][]AuditEvent, error) {
	events, err := ReadAuditFile(c.AuditLog)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	warmups := slices.Clone(c.warmups)
	c.mu.Unlock()
	events = slices.DeleteFunc(events, func(e AuditEvent) bool {
		return slices.ContainsFunc(warmups, func(w window) bool { return w.contains(e.RequestReceivedTimestamp) })
	})
	return Forbidden(events, keep), nil
}
