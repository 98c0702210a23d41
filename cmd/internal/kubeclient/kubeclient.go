// Package kubeclient holds the client settings berth's binaries share.
package kubeclient

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Protobuf returns a copy of cfg that speaks protobuf, for the built-in types' clientset:
// decoding a watched Service or EndpointSlice costs the client a fraction of JSON, and at
// 10,000 Services JSON kept the controller's Service watch behind the apiserver, which
// closed it again and again. Custom resources have no protobuf: their clients keep cfg.
func Protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}
