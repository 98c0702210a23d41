// Package v1alpha1 holds berth's custom resources, all cluster-scoped, in the group
// berth.dev: IPPool, BGPPeer, BGPAdvertisement and L2Advertisement, which users write, and
// NodeAnnouncement, which each node's speaker writes.
//
// Single objects are validated at admission by the OpenAPI schema and CEL rules generated
// from the markers here; what CEL cannot express, and every cross-object rule, is checked by
// config.Build and reported as conditions on the objects.
//
// +kubebuilder:object:generate=true
// +groupName=berth.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of berth's resources.
var GroupVersion = schema.GroupVersion{Group: "berth.dev", Version: "v1alpha1"}

// AddToScheme registers berth's kinds with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&IPPool{}, &IPPoolList{},
		&BGPPeer{}, &BGPPeerList{},
		&BGPAdvertisement{}, &BGPAdvertisementList{},
		&L2Advertisement{}, &L2AdvertisementList{},
		&NodeAnnouncement{}, &NodeAnnouncementList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
