"""The stream layer: change streams without a broker, pulled from the log by subscribers.

`subscription.Subscription` delivers a branch's commits as per-table change batches (`feed`), wakes on
commits by any local process (`notify`) and keeps consumer groups' positions and leases in the log
(`udr.log.groups`), so an ack can commit atomically with a transaction's outputs. Consumers pull: writers
never wait for them. A group with several members (`member.MemberFeed`) splits batches by partition
(`partition`) and keeps per-partition positions and member leases (`udr.log.members`); `admin` lists,
resets and deletes groups.
"""
