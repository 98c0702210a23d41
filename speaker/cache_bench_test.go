package speaker

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// BenchmarkCacheBytes reports the heap the speaker's Service and EndpointSlice caches keep
// per Service, at 10,000 berth Services each with one slice of three endpoints, as the
// scale scenario makes them. The objects are decoded from protobuf, as a watch delivers
// them, with what the apiserver and berth-controller add (managed fields, conditions,
// finalizers).
func BenchmarkCacheBytes(b *testing.B) {
	const n = 10_000
	nodes := []string{"node1", "node2", "node3"}
	classes := Classes{LoadBalancerClass: "berth.dev/lb"}
	transform := cacheObject("node1", classes)
	var perService float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		services, slices := newCaches()
		for i := range n {
			svc, es := apiObjects(i, nodes)
			if err := services.Add(must(transform(svc))); err != nil {
				b.Fatal(err)
			}
			if err := slices.Add(must(transform(es))); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perService = float64(after.HeapAlloc-before.HeapAlloc) / n
		src := informerSource{services: services, slices: slices}
		if _, ok := src.Service(types.NamespacedName{Namespace: "scale", Name: "svc-00007"}); !ok {
			b.Fatal("svc-00007 is not in the cache")
		}
		runtime.KeepAlive(services)
		runtime.KeepAlive(slices)
	}
	b.ReportMetric(perService, "B/service")
	b.ReportMetric(perService*n/1e6, "MB/10k")
}

// apiObjects returns Service i and its EndpointSlice as a watch decodes them.
func apiObjects(i int, nodes []string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	name := fmt.Sprintf("svc-%05d", i)
	created := metav1.NewTime(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	managed := func(manager string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			Time: &created, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{}}},"f:type":{}}}`)}}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name, UID: types.UID(fmt.Sprintf("5f0c7f3e-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(100_000 + i), CreationTimestamp: created,
			Annotations: map[string]string{"berth.dev/pool": "bgp"}, Finalizers: []string{"service.kubernetes.io/load-balancer-cleanup"},
			ManagedFields: []metav1.ManagedFieldsEntry{managed("scale.test"), managed("berth-controller")}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "None", ClusterIPs: []string{"None"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
			AllocateLoadBalancerNodePorts: ptr.To(false), LoadBalancerClass: ptr.To("berth.dev/lb"),
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster, InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			SessionAffinity: corev1.ServiceAffinityNone,
			Ports:           []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: fmt.Sprintf("198.19.%d.%d", i>>8, i&0xff), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}},
			Conditions: []metav1.Condition{
				{Type: "berth.dev/Allocated", Status: metav1.ConditionTrue, Reason: "IPAllocated", Message: "198.19.0.7 from pool bgp", LastTransitionTime: created},
				{Type: "berth.dev/Announced", Status: metav1.ConditionTrue, Reason: "Announced", Message: "BGP from node1, node2, node3", LastTransitionTime: created},
			},
		},
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name + "-1", UID: types.UID(fmt.Sprintf("6f0c7f3e-0000-4000-8000-%012d", i)),
			ResourceVersion: fmt.Sprint(200_000 + i), CreationTimestamp: created,
			Labels:        map[string]string{discoveryv1.LabelServiceName: name},
			ManagedFields: []metav1.ManagedFieldsEntry{managed("scale.test")}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j, node := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.%d", j, 10+i%240)},
			NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	return roundTrip(svc, &corev1.Service{}), roundTrip(es, &discoveryv1.EndpointSlice{})
}

type protoObject interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// roundTrip decodes in from its protobuf encoding, so that every string is its own
// allocation as in a watch.
func roundTrip[T protoObject](in, out T) T {
	data, err := in.Marshal()
	if err != nil {
		panic(err)
	}
	if err := out.Unmarshal(data); err != nil {
		panic(err)
	}
	return out
}

// newCaches returns the Service and EndpointSlice caches as New builds them, and the
// informers' transform, which Add does not apply.
func newCaches() (services, slices cache.Indexer) {
	return serviceInformer(nil, 0).GetIndexer(), sliceInformer(nil, 0).GetIndexer()
}

func must(o any, err error) any {
	if err != nil {
		panic(err)
	}
	return o
}
