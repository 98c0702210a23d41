package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/speaker/membership"
)

// keyPollInterval is how often a mounted key directory or file is read again. The
// kubelet updates a mounted Secret within about a minute of its change; reading a few
// tiny files every 5 s adds little to that and costs nothing.
const keyPollInterval = 5 * time.Second

// EventMemberlistKeysRejected is the reason of the Warning Event on the Secret
// berth-memberlist when a speaker finds its keys invalid and keeps the ones it has.
const EventMemberlistKeysRejected = "MemberlistKeysRejected"

// memberlistKeys reads memberlist's keys at start: from --memberlist-key-dir (the Secret
// mounted), --memberlist-key-file (one key), or the Secret through the apiserver. There
// is no default key: a speaker without a valid one refuses to start.
func memberlistKeys(ctx context.Context, kc kubernetes.Interface, o options) (membership.Keys, error) {
	entries, src, err := readKeyEntries(ctx, kc, o)
	if err != nil {
		return membership.Keys{}, fmt.Errorf("memberlist key: %w", err)
	}
	keys, err := membership.KeysFrom(entries)
	if err != nil {
		return membership.Keys{}, fmt.Errorf("memberlist key: %s: %w", src, err)
	}
	return keys, nil
}

func readKeyEntries(ctx context.Context, kc kubernetes.Interface, o options) (map[string][]byte, string, error) {
	switch {
	case o.keyDir != "" && o.keyFile != "":
		return nil, "", errors.New("set --memberlist-key-dir or --memberlist-key-file, not both")
	case o.keyDir != "":
		e, err := readKeyDir(o.keyDir)
		return e, "directory " + o.keyDir, err
	case o.keyFile != "":
		e, err := readKeyFile(o.keyFile)
		return e, "file " + o.keyFile, err
	}
	src := fmt.Sprintf("Secret %s/%s", o.namespace, controller.MemberlistSecretName)
	s, err := kc.CoreV1().Secrets(o.namespace).Get(ctx, controller.MemberlistSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, src, fmt.Errorf("%s not found: berth-controller creates it when it starts leading; refusing to start without a key", src)
	}
	if err != nil {
		return nil, src, fmt.Errorf("read %s: %w", src, err)
	}
	return s.Data, src, nil
}

// readKeyFile reads a file holding the primary key alone.
func readKeyFile(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{membership.PrimaryEntry: b}, nil
}

// readKeyDir reads a directory holding one key per file, as the kubelet mounts a Secret:
// file "key" the primary, every other file an accepted key. Names starting with a dot are
// skipped. Where the kubelet's ..data link exists, the files are read from the version it
// points at, so that one read never mixes two versions of the Secret.
func readKeyDir(dir string) (map[string][]byte, error) {
	if target, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		dir = target
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follows the kubelet's links
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

func fingerprints(keys [][]byte) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, membership.Fingerprint(k))
	}
	return out
}

// keySetter is what keyFollower needs of membership.List.
type keySetter interface {
	UpdateKeys(entries map[string][]byte) (membership.KeyChange, error)
}

// keyFollower hands memberlist the keys each time their source changes, and tells the
// operator what happened: the keys now in use, the risks of the change while it spreads,
// or why new keys were rejected (the old ones stay). Offering the same entries twice does
// nothing, so a rejection is reported once per content.
type keyFollower struct {
	list   keySetter
	logger klog.Logger
	source string
	// reject reports rejected keys where the operator looks (an Event); nil: log only.
	reject func(error)

	last    map[string][]byte // the entries last offered, valid or not
	readErr string            // the read error last logged
}

// offer applies entries unless they equal the last ones offered.
func (f *keyFollower) offer(entries map[string][]byte) {
	f.readErr = ""
	if f.last != nil && maps.EqualFunc(f.last, entries, bytes.Equal) {
		return
	}
	f.last = maps.Clone(entries)
	change, err := f.list.UpdateKeys(entries)
	if err != nil {
		f.logger.Error(err, "Memberlist keys rejected; the keys in use stay", "source", f.source)
		if f.reject != nil {
			f.reject(err)
		}
		return
	}
	if !change.Changed() {
		return
	}
	f.logger.Info("Memberlist keys changed", "source", f.source, "primary", change.Primary, "accepted", change.Accepted,
		"added", change.Added, "removed", change.Removed)
	for _, r := range change.Risks {
		f.logger.Info("Memberlist key change may cut speakers off until it reaches every speaker: "+riskAdvice[r],
			"risk", r, "source", f.source)
	}
}

// riskAdvice tells the operator what each risk means and how to avoid it.
var riskAdvice = map[membership.KeyRisk]string{
	membership.KeyRiskPrimaryNotAccepted: "the new primary key was not accepted before; speakers that have not " +
		"accepted it cannot read this one (add a key as an extra entry first, and make it primary once every " +
		"speaker reports it in berth_memberlist_key_info)",
	membership.KeyRiskOldPrimaryDropped: "the old primary key is no longer accepted; speakers still sending with " +
		"it cannot reach this one (keep it as an extra entry until every speaker reports the new primary)",
}

// readFailed logs a failed read of the source, once per distinct error; the keys in use
// stay.
func (f *keyFollower) readFailed(err error) {
	if err.Error() == f.readErr {
		return
	}
	f.readErr = err.Error()
	f.logger.Error(err, "Cannot read memberlist keys; the keys in use stay", "source", f.source)
}

// followKeys applies every change of the keys' source until ctx ends: the Secret through
// a watch, or the mounted directory or file read every keyPollInterval.
func followKeys(ctx context.Context, kc kubernetes.Interface, o options, list keySetter, recorder record.EventRecorder) {
	logger := klog.FromContext(ctx).WithName("memberlist")
	if o.keyDir != "" || o.keyFile != "" {
		f := &keyFollower{list: list, logger: logger}
		read := func() (map[string][]byte, error) { return readKeyDir(o.keyDir) }
		f.source = "directory " + o.keyDir
		if o.keyFile != "" {
			read = func() (map[string][]byte, error) { return readKeyFile(o.keyFile) }
			f.source = "file " + o.keyFile
		}
		pollKeys(ctx, f, read, keyPollInterval)
		return
	}
	ref := &corev1.ObjectReference{Kind: "Secret", APIVersion: "v1", Namespace: o.namespace, Name: controller.MemberlistSecretName}
	f := &keyFollower{list: list, logger: logger, source: fmt.Sprintf("Secret %s/%s", o.namespace, controller.MemberlistSecretName),
		reject: func(err error) {
			recorder.Eventf(ref, corev1.EventTypeWarning, EventMemberlistKeysRejected,
				"Node %s keeps the memberlist keys it has: %v", o.nodeName, err)
		}}
	watchKeySecret(ctx, kc, o.namespace, f)
}

// pollKeys offers f what read returns, now and every interval, until ctx ends.
func pollKeys(ctx context.Context, f *keyFollower, read func() (map[string][]byte, error), interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if entries, err := read(); err != nil {
			f.readFailed(err)
		} else {
			f.offer(entries)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchKeySecret watches the one Secret and offers f its data on every change, until ctx
// ends. A deleted Secret changes nothing: the speakers keep talking with the keys they have.
func watchKeySecret(ctx context.Context, kc kubernetes.Interface, namespace string, f *keyFollower) {
	factory := informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", controller.MemberlistSecretName).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	kick := make(chan struct{}, 1)
	wake := func(any) { wakeUp(kick) }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: wake, UpdateFunc: func(_, o any) { wake(o) }, DeleteFunc: wake,
	}); err != nil {
		f.logger.Error(err, "Cannot watch the memberlist keys; the keys read at start stay", "source", f.source)
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	key := namespace + "/" + controller.MemberlistSecretName
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		o, found, err := inf.GetStore().GetByKey(key)
		s, _ := o.(*corev1.Secret)
		switch {
		case err != nil:
			f.readFailed(err)
		case !found || s == nil:
			f.readFailed(fmt.Errorf("%s deleted: restore it. berth-controller creates a new one when it next "+
				"starts leading, with a new key that every speaker would switch to at once", f.source))
		default:
			f.offer(s.Data)
		}
	}
}
