// Command etcd is etcd's own server (etcdmain), built from the Go module
// proxy because envtest's download of it cannot reach the internet here.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
