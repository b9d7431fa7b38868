module streamfeat/loadgen

go 1.21
