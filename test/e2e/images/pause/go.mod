module github.com/cert-manager-csi-driver/test/e2e/images/pause

go 1.26.0
