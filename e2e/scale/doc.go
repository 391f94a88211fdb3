// Package scale holds BenchmarkFleetScale: the whole hub controller (clusters, propagation,
// servicesync) in process against a local fleet of dozens of real, trimmed member control
// planes, measuring what the hub costs per member and fitting the line to 1,000 members.
// It has no product code; the benchmark is in its test file. Run it alone with
//
//	FLOTILLA_FLEET_SIZES=10,25 go test ./e2e/scale -run '^$' -bench FleetScale -benchtime 1x -count 3 -timeout 120m
package scale
