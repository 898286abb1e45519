# Scenario `boot`: what a pod's first calls see after kata's launch: kata-agent's
# GetResource over the hub's socket (cdh-tool) and a workload's GET on the REST shim at
# 127.0.0.1:8006 (busybox wget), both for $VMTEST_RESOURCE (a kbs:/// URI the test's KBS
# serves through cc_kbc).
# Reports: resource_ttrpc <rc> <base64>, resource_rest <rc> <base64>, dm <yes|no>.

path=${VMTEST_RESOURCE#kbs:///}
cdh-tool --raw get-resource --resource-uri "$VMTEST_RESOURCE" >/run/vmtest/resource.ttrpc 2>/run/vmtest/get-resource.err
report resource_ttrpc "$? $(base64 -w0 </run/vmtest/resource.ttrpc)"
[ -s /run/vmtest/get-resource.err ] && report_file get-resource.err /run/vmtest/get-resource.err
wget -q -O /run/vmtest/resource.rest "http://127.0.0.1:8006/cdh/resource/$path" 2>/run/vmtest/wget.err
report resource_rest "$? $(base64 -w0 </run/vmtest/resource.rest)"
[ -s /run/vmtest/wget.err ] && report_file wget.err /run/vmtest/wget.err
if grep -q ' device-mapper$' /proc/misc; then report dm yes; else report dm no; fi
