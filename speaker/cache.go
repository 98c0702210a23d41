package speaker

import (
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The speaker's caches keep of each Service and EndpointSlice only what its decisions
// read, already parsed: at 10,000 Services the API objects were half of its live heap
// (BenchmarkCacheBytes).

// objectRef is what the caches keep of an object's metadata: what client-go's keys and
// update handling read, through GetObjectMeta (meta.Accessor). A whole ObjectMeta is
// 232 bytes, kept twice a Service.
type objectRef struct{ namespace, name, resourceVersion string }

func newObjectRef(m *metav1.ObjectMeta) objectRef {
	return objectRef{namespace: intern(m.Namespace), name: m.Name, resourceVersion: m.ResourceVersion}
}

// GetObjectMeta returns a copy: changing it changes nothing in the cache.
func (r *objectRef) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.namespace, Name: r.name, ResourceVersion: r.resourceVersion}
}

func (r *objectRef) key() types.NamespacedName {
	return types.NamespacedName{Namespace: r.namespace, Name: r.name}
}

// cachedService is a Service as the speaker's cache keeps it.
type cachedService struct {
	objectRef
	// handled says berth announces the Service (Classes.Handles).
	handled bool
	// view is the decision's view without endpoints; empty unless handled.
	view Service
}

// cachedSlice is an EndpointSlice as the speaker's cache keeps it.
type cachedSlice struct {
	objectRef
	// service is the name of the Service the slice belongs to; empty for none.
	service   string
	endpoints sliceEndpoints
}

// cacheObject is the informers' transform. Services and EndpointSlices become
// cachedService and cachedSlice, as seen from node self; Nodes and Secrets lose what the
// speaker never reads.
func cacheObject(self string, classes Classes) cache.TransformFunc {
	return func(o any) (any, error) {
		switch x := o.(type) {
		case *corev1.Service:
			c := &cachedService{objectRef: newObjectRef(&x.ObjectMeta), handled: classes.Handles(x)}
			if c.handled {
				c.view = serviceView(x)
				c.view.Namespace = c.namespace
				for i := range c.view.Ports {
					p := &c.view.Ports[i]
					p.Name, p.Protocol = intern(p.Name), intern(p.Protocol)
				}
			}
			return c, nil
		case *discoveryv1.EndpointSlice:
			c := &cachedSlice{objectRef: newObjectRef(&x.ObjectMeta), service: x.Labels[discoveryv1.LabelServiceName],
				endpoints: endpointsOf(x, self)}
			for i := range c.endpoints.endpoints {
				e := &c.endpoints.endpoints[i]
				e.Node = intern(e.Node)
			}
			for i := range c.endpoints.local {
				e := &c.endpoints.local[i]
				e.PortName = intern(e.PortName)
			}
			return c, nil
		}
		return strip(o), nil
	}
}

// intern returns the one copy of s that all cached objects share: namespaces, node and
// port names repeat across thousands of them.
func intern(s string) string { return unique.Make(s).Value() }

// strip drops what the speaker never reads of a Node or Secret: managed fields and
// annotations, and the bulk of Node status (images, system info, volumes).
func strip(o any) any {
	m, ok := o.(metav1.Object)
	if !ok {
		return o
	}
	m.SetManagedFields(nil)
	m.SetAnnotations(nil)
	if n, ok := o.(*corev1.Node); ok {
		n.Status.Images, n.Status.VolumesInUse, n.Status.VolumesAttached = nil, nil, nil
		n.Status.NodeInfo = corev1.NodeSystemInfo{}
		n.Status.Capacity, n.Status.Allocatable = nil, nil
	}
	return o
}

// serviceInformer lists and watches every Service, without the namespace index that
// nothing reads.
func serviceInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return coreinformers.NewServiceInformer(client, metav1.NamespaceAll, resync, cache.Indexers{})
}

// sliceInformer lists and watches every EndpointSlice, indexed by Service.
func sliceInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return discoveryinformers.NewEndpointSliceInformer(client, metav1.NamespaceAll, resync, cache.Indexers{serviceIndex: sliceService})
}

// informerSource reads Services and their EndpointSlices from the informers' caches.
type informerSource struct {
	services cache.Indexer
	slices   cache.Indexer
}

const serviceIndex = "service"

func sliceService(o any) ([]string, error) {
	es, ok := o.(*cachedSlice)
	if !ok || es.service == "" {
		return nil, nil
	}
	return []string{es.namespace + "/" + es.service}, nil
}

func (s *informerSource) Service(key types.NamespacedName) (Service, bool) {
	o, ok, _ := s.services.GetByKey(key.String())
	if !ok {
		return Service{}, false
	}
	svc := o.(*cachedService)
	if !svc.handled {
		return Service{}, false
	}
	objs, _ := s.slices.ByIndex(serviceIndex, key.String())
	parts := make([]sliceEndpoints, 0, len(objs))
	for _, o := range objs {
		parts = append(parts, o.(*cachedSlice).endpoints)
	}
	return withEndpoints(svc.view, parts), true
}

func (s *informerSource) Keys() []types.NamespacedName {
	var out []types.NamespacedName
	for _, o := range s.services.List() {
		if svc := o.(*cachedService); svc.handled {
			out = append(out, svc.key())
		}
	}
	return out
}
