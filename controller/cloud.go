package controller

import (
	cloudprovider "k8s.io/cloud-provider"
)

// ProviderName is berth's cloud-provider name.
const ProviderName = "berth"

// cloud is the cloudprovider.Interface the upstream service controller needs; berth only
// provides load balancers.
type cloud struct{ lb *LoadBalancer }

var _ cloudprovider.Interface = cloud{}

func (cloud) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (c cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool)                { return c.lb, true }
func (cloud) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (cloud) InstancesV2() (cloudprovider.InstancesV2, bool)                    { return nil, false }
func (cloud) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (cloud) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (cloud) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (cloud) ProviderName() string                                              { return ProviderName }
func (cloud) HasClusterID() bool                                                { return true }
