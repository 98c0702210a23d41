package controller

import (
	"context"
	"crypto/rand"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The Secret holding memberlist's encryption keys, created by the controller and watched
// by the speakers, which refuse to start without it. MemberlistSecretKey is the primary
// key (membership.PrimaryEntry); every other entry is a key the speakers also accept, the
// means of a live rotation (docs/speaker.md, "Memberlist keys and their rotation").
const (
	MemberlistSecretName = "berth-memberlist"
	MemberlistSecretKey  = "key"
)

// EnsureMemberlistSecret creates the memberlist Secret with a random AES-256 key in
// namespace, unless it exists. An existing Secret is never touched: speakers with
// different keys could not talk, and rotating the key is the operator's three steps.
func EnsureMemberlistSecret(ctx context.Context, c kubernetes.Interface, namespace string) error {
	_, err := c.CoreV1().Secrets(namespace).Get(ctx, MemberlistSecretName, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read secret %s/%s: %w", namespace, MemberlistSecretName, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: MemberlistSecretName,
			Labels: map[string]string{"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "memberlist"}},
		Data: map[string][]byte{MemberlistSecretKey: key},
	}
	_, err = c.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create secret %s/%s: %w", namespace, MemberlistSecretName, err)
	}
	return nil
}
