"""inferlab.policies"""
