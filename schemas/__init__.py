"""The Avro event contract, shipped inside the package as `consumer.schemas`.

One `<Name>.v<N>.avsc` file per released version; none is ever removed, so old events still decode.
Read with `importlib.resources` by `consumer.codec.avro.SchemaStore.load_default()`. (This file exists so
that editable installs can map the folder as a regular package.)
"""
