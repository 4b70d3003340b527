// Package k8s holds the Kubernetes manifests of iot-producer (the *.yaml
// files beside this one) and no code. Its tests decode every manifest
// strictly, check the names, ports and resources the ops manual relies on,
// and load the ConfigMap's config.yaml with the agent's own parser. It knows
// nothing of how the agent works beyond its configuration.
package k8s
