"""The controller core both controllers stand on: the kinds the operator touches, the metadata
and Events it renders, the one store that talks to the API, the one label-selected cache of
children, and the one queue + resync loop. `engine/` and `finetune/` add only their own logic."""
