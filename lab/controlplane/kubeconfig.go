package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Well-known identities of the lab's components. The apiserver's bootstrap RBAC policy
// binds the first three; AdminUser is in system:masters.
const (
	AdminUser             = "berth-lab-admin"
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	KubeProxyUser         = "system:kube-proxy"
)

// DefaultTokenTTL is how long ServiceAccount tokens issued for the lab stay valid: longer
// than any lab run, since nothing in the lab refreshes a token file.
const DefaultTokenTTL = 24 * time.Hour

// ClientKubeconfig issues a client certificate for user in groups and writes a kubeconfig
// for it to <Dir>/kubeconfig/<file>.kubeconfig, returning the path. The server address
// is APIServer, which a namespace reaches through a forward on the same port
// (lab.Network.ForwardHost with port 0), so one file serves the host and every node.
func (c *Cluster) ClientKubeconfig(file, user string, groups ...string) (string, error) {
	kp, err := c.ca.issue("client-"+file, user, groups, nil, nil, false)
	if err != nil {
		return "", fmt.Errorf("kubeconfig %s for %s: %w", file, user, err)
	}
	path := filepath.Join(c.Dir, "kubeconfig", file+".kubeconfig")
	auth := &clientcmdapi.AuthInfo{ClientCertificate: kp.CertPath, ClientKey: kp.KeyPath}
	if err := c.writeKubeconfig(path, user, auth); err != nil {
		return "", err
	}
	return path, nil
}

// ServiceAccountToken returns a token for the ServiceAccount namespace/name from the
// TokenRequest API, valid for ttl (DefaultTokenTTL when zero). The ServiceAccount must
// exist: the lab runs berth's binaries with the identities deploy/ creates.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	secs := int64(ttl / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the ServiceAccount
// namespace/name with a token from ServiceAccountToken, to
// <Dir>/kubeconfig/sa-<namespace>-<name>.kubeconfig, and returns the path. With create
// set, a missing ServiceAccount is created first.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string, create bool) (string, error) {
	if create {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		_, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
		}
	}
	token, err := c.ServiceAccountToken(ctx, namespace, name, 0)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, "kubeconfig", fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := c.writeKubeconfig(path, user, &clientcmdapi.AuthInfo{Token: token}); err != nil {
		return "", err
	}
	return path, nil
}

// ServiceAccountConfig is a client configuration with the ServiceAccount's token, for
// code in the test process that must act as that ServiceAccount.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	token, err := c.ServiceAccountToken(ctx, namespace, name, 0)
	if err != nil {
		return nil, err
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token
	return cfg, nil
}

// writeKubeconfig writes a one-context kubeconfig for the lab's apiserver.
func (c *Cluster) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthority: c.ca.certPath()}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: user}
	cfg.CurrentContext = "lab"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	// Written aside and renamed into place: supervised binaries restarting at once (two
	// controller replicas, the speakers) rewrite one ServiceAccount's file while another
	// process may be reading it, and must never see it half-written.
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	tmp.Close()
	if err := clientcmd.WriteToFile(*cfg, tmp.Name()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return nil
}

// restConfig is a client configuration for a certificate issued by the lab's CA.
func restConfig(server netip.AddrPort, caPEM []byte, kp keyPair) *rest.Config {
	return &rest.Config{
		Host: "https://" + server.String(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   caPEM,
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
		// The lab creates objects in bursts (Deployments, many Services in scale runs);
		// client-go's default 5 QPS would dominate every measurement.
		QPS:   200,
		Burst: 400,
	}
}

// WriteKubeconfig writes cfg (a client configuration with certificate or token
// credentials, such as ControlPlane.Config) as a kubeconfig file at path, for the programs
// a test runs against the control plane: berth's binaries, kubectl.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "user"}
	kc.CurrentContext = "lab"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
