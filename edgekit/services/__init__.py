"""The services below the API: the export pipeline (`exporting`: prepare -> backend export -> manifest ->
verify), host verification against the FP32 source (`verification`) and the precision choice of
`--precision auto` (`precision`, beside the export service and handed its `export`). `edgekit.api`,
`edgekit.release`, `edgekit.split` and `edgekit.demo` call them; they never import `edgekit.api`.
Nothing is imported here: import the module you need."""
